import json

import pytest

from cryostream import NoiseConfig, PrepareConfig, SimulateConfig, TrainConfig
from cryostream.config import from_dict, to_dict, to_json
from cryostream.errors import ConfigError, CryostreamError


def test_round_trip_through_json():
    cfg = PrepareConfig(patch_size=256, stride=128, noise=NoiseConfig(model="gaussian", sigma=0.1))
    data = json.loads(to_json(cfg))
    assert data["kind"] == "PrepareConfig" and data["cryostream_version"]
    assert from_dict(PrepareConfig, data["config"]) == cfg
    sim = SimulateConfig(shape=(256, 300), seed=3)
    assert from_dict(SimulateConfig, to_dict(sim)) == sim


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match=r"unknown keys \['patchsize'\]"):
        from_dict(PrepareConfig, {"patchsize": 3})


def test_configs_are_frozen():
    cfg = PrepareConfig()
    with pytest.raises(AttributeError):
        cfg.stride = 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: NoiseConfig(model="salt"), "noise='salt': must be one of"),
        (lambda: NoiseConfig(sigma=-1), "sigma=-1"),
        (lambda: NoiseConfig(dose=0), "dose=0"),
        (lambda: NoiseConfig(mode="later"), "noise_mode='later'"),
        (lambda: PrepareConfig(dtype="int8"), "dtype='int8'"),
        (lambda: PrepareConfig(compression="gzip"), "compression='gzip'"),
        (lambda: PrepareConfig(test_fraction=1.0), "test_fraction=1.0"),
        (lambda: PrepareConfig(percentile=0), "percentile=0"),
        (lambda: PrepareConfig(patch_size=10.5), "patch_size=10.5: must be an integer"),
        (lambda: SimulateConfig(shape=(10, 10)), "shape=\\(10, 10\\)"),
        (lambda: SimulateConfig(defocus_um=(2.0, 1.0)), "defocus_um"),
        (lambda: TrainConfig(beta2=1.0), "beta2=1.0: must be in \\(0, 1\\)"),
        (lambda: TrainConfig(beta2=0), "beta2=0: must be in \\(0, 1\\)"),
    ],
)
def test_bad_values_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message) as info:
        make()
    assert isinstance(info.value, CryostreamError) and isinstance(info.value, ValueError)


def test_the_stride_defaults_to_half_the_patch_and_never_exceeds_it():
    assert PrepareConfig().stride == 512 and PrepareConfig(patch_size=256).stride == 128
    assert PrepareConfig(patch_size=256, stride=256).stride == 256
    assert from_dict(PrepareConfig, to_dict(PrepareConfig(patch_size=96))) == PrepareConfig(
        patch_size=96, stride=48)
    # a new grid with a stride above the patch is refused; such a config still loads (stores
    # made before the stride followed the patch kept 512 with smaller patches)
    from cryostream.plan import plan

    old = from_dict(PrepareConfig, to_dict(PrepareConfig(patch_size=128, stride=128)) | {
        "stride": 512})
    assert old.stride == 512
    with pytest.raises(ConfigError, match="stride=512 is larger than patch_size=128"):
        plan(shape=(1024, 1024), count=2, config=old)
