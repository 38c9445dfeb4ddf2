import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryostream.errors import ConfigError
from cryostream.patches import patch_grid_shape, patch_origins, uncovered_pixels


def test_empiar_10025_grid():
    assert patch_grid_shape((7676, 7420), 1024, 512, "drop") == (13, 13)
    assert patch_grid_shape((7676, 7420), 1024, 512, "cover") == (14, 14)
    assert uncovered_pixels(7676, 1024, 512, "drop") == 508
    assert uncovered_pixels(7420, 1024, 512, "drop") == 252
    assert uncovered_pixels(7676, 1024, 512, "cover") == 0
    assert patch_origins(7676, 1024, 512, "cover")[-1] == 7676 - 1024


def test_exact_fit_adds_no_extra_patch():
    assert list(patch_origins(2048, 1024, 512, "cover")) == [0, 512, 1024]


@given(
    length=st.integers(1, 3000),
    patch=st.integers(1, 600),
    stride=st.integers(1, 700),
)
def test_cover_sees_every_pixel_and_drop_is_regular(length, patch, stride):
    if length < patch:
        with pytest.raises(ConfigError, match="smaller than patch_size"):
            patch_origins(length, patch, stride, "cover")
        return
    cover = patch_origins(length, patch, stride, "cover")
    drop = patch_origins(length, patch, stride, "drop")
    assert np.all(cover + patch <= length) and np.all(cover >= 0)
    assert np.all(np.diff(cover) > 0)
    assert np.array_equal(drop, np.arange(len(drop)) * stride)
    assert np.array_equal(cover[: len(drop)], drop)
    seen = np.zeros(length, bool)
    for o in cover:
        seen[o : o + patch] = True
    # Gaps between regular patches (stride > patch) are by design; the tail is always covered.
    assert seen[-1]
    if stride <= patch:
        assert seen.all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 0}, "patch_size=0"),
        ({"stride": -1}, "stride=-1"),
        ({"edge": "pad"}, "edge='pad': must be one of cover, drop"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    args = {"length": 100, "patch_size": 10, "stride": 5, "edge": "cover"} | kwargs
    with pytest.raises(ConfigError, match=message):
        patch_origins(**args)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_dihedral_turns_both_batches_alike_through_all_eight_views():
    import jax

    from cryostream.patches import dihedral

    x = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5, 1)  # no symmetry of its own
    views = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    views += [np.flip(v, axis=2) for v in views]
    seen = set()
    for i in range(64):
        a, b = dihedral(jax.random.key(i), x, -2 * x)
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(b, -2 * a)  # the same view of both
        match = [k for k, v in enumerate(views) if np.array_equal(a, v)]
        assert len(match) == 1  # one of the eight, and they are distinct
        seen.add(match[0])
    assert seen == set(range(8))
    with pytest.raises(ConfigError, match="not square"):
        dihedral(jax.random.key(0), np.zeros((1, 4, 6, 1), np.float32))
