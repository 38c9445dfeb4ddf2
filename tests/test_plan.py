import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig, plan
from cryostream.errors import ConfigError
from cryostream.split import held_out_count, split_micrographs
from tests.conftest import write_mrc


def test_empiar_10025_sizes():
    p = plan(shape=(7676, 7420), count=196)
    assert p.grid == {"drop": (13, 13), "cover": (14, 14)}
    assert p.uncovered["drop"] == (508, 252) and p.uncovered["cover"] == (0, 0)
    assert p.patches_per_micrograph == 196
    assert p.n_test_micrographs == 20 and p.n_train_micrographs == 176
    assert p.train_patches + p.test_patches == 196 * 196
    assert p.array_bytes("float32") == 196 * 196 * 4 * 1024**2  # 161 GB per array
    assert p.store_bytes("float32", "stored") == 2 * p.array_bytes("float32")
    assert p.store_bytes("float16", "on-device") == p.store_bytes("float32", "stored") // 4
    assert not p.fits_in_ram
    drop = plan(shape=(7676, 7420), count=196, config=PrepareConfig(edge="drop"))
    assert drop.patches_per_micrograph == 169
    text = p.table()
    assert "169" in text and "196" in text and "322.26 GB" in text
    assert "more than this machine's" in text and "training streams it from disk" in text
    assert "not checked (give -o" in text  # no output place, no free space to check
    small = plan(shape=(512, 512), count=2, config=PrepareConfig(patch_size=256)).table()
    assert "within this machine's" in small


def test_plan_from_files_matches_plan_from_shape(tmp_path):
    paths = [write_mrc(tmp_path / f"m{i}.mrc", np.zeros((300, 260), np.float32)) for i in range(5)]
    cfg = PrepareConfig(patch_size=128, stride=64, test_fraction=0.2)
    a = plan(paths, config=cfg, output=tmp_path)
    b = plan(shape=(300, 260), count=5, config=cfg)
    assert a.to_dict()["grid"] == b.to_dict()["grid"] == {"drop": [3, 3], "cover": [4, 4]}
    assert a.n_test_micrographs == b.n_test_micrographs == 1
    assert a.input_bytes == 5 * 300 * 260 * 4
    assert a.fits_on_disk and a.disk_free_bytes > 0


def test_on_device_noise_halves_the_store():
    cfg = PrepareConfig(noise=NoiseConfig(mode="on-device"), dtype="float16")
    p = plan(shape=(7676, 7420), count=10, config=cfg)
    assert p.store_bytes() == p.array_bytes("float16")


def test_every_noise_model_has_a_time_estimate():
    import dataclasses

    from cryostream.config import NOISE_MODELS

    def seconds(model):  # float16 on one core: CPU-bound, so the noise model shows
        config = PrepareConfig(noise=NoiseConfig(model=model), dtype="float16")
        return dataclasses.replace(plan(shape=(7676, 7420), count=10, config=config),
                                   cores=1).seconds()

    s = {m: seconds(m) for m in NOISE_MODELS}
    assert s["none"] <= s["gaussian"] < s["poisson-gaussian"] < s["matched"]


def test_bad_arguments():
    with pytest.raises(cryostream.ConfigError, match="both shape"):
        plan(shape=(10, 10))
    with pytest.raises(cryostream.ConfigError, match=r"micrographs of 20 × 24 px: too small to "
                       r"train on \(at least 32 px a side\)"):
        plan(shape=(20, 24), count=1)


def test_a_patch_larger_than_the_micrographs_becomes_the_one_fit_chooses(tmp_path, capsys):
    """On 512² micrographs the default 1024 px patch cannot be cut: the plan takes the patch
    ``fit`` would (256, stride 128) and says why and what to give ``prepare``; a patch that
    fits is planned as asked."""
    from cryostream.cli import main
    from cryostream.fit import recipe

    p = plan(shape=(512, 512), count=3)
    assert (p.config.patch_size, p.config.stride, p.asked_patch_size) == (256, 128, 1024)
    assert p.config.patch_size == recipe((512, 512)).patch_size and p.grid["cover"] == (3, 3)
    assert p.to_dict()["asked_patch_size"] == 1024
    assert plan(shape=(512, 512), count=3, config=PrepareConfig(patch_size=512)).config == \
        PrepareConfig(patch_size=512)
    folder = tmp_path / "mics"
    folder.mkdir()
    for i in range(3):
        write_mrc(folder / f"m{i}.mrc", np.zeros((512, 512), np.float32))
    assert main(["plan", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "3 micrographs of 512 × 512 px (3.1 MB to read), patch 256, stride 128",
        "(patch 1024 is larger than the micrographs: planned with 256, the patch cryostream fit "
        "chooses for them; prepare them with --patch 256; Python: PrepareConfig(patch_size=256, "
        "stride=128))"]
    assert main(["plan", str(folder), "--patch", "1024", "--stride", "256"]) == 0
    assert "prepare them with --patch 256 --stride 64; Python: PrepareConfig(patch_size=256, " \
        "stride=64))" in capsys.readouterr().out


def test_plan_refuses_a_patch_prepare_refuses(capsys):
    """A patch side the networks cannot take is refused by plan as by prepare, with the same
    fix (plan had planned a store prepare would then refuse)."""
    from cryostream.cli import main

    with pytest.raises(ConfigError, match=r"--patch 96"):
        plan(shape=(1024, 1024), count=3, config=PrepareConfig(patch_size=100))
    assert main(["plan", "--shape", "1024", "1024", "--count", "3", "--patch", "100"]) == 2
    assert "use --patch 96" in capsys.readouterr().err


def test_plan_refuses_an_output_prepare_refuses(tmp_path, capsys):
    """``plan -o FOLDER`` planned a store that ``prepare -o FOLDER`` then refused: plan now
    refuses it the same way, with the file name to give; a store's file name is planned."""
    from cryostream.cli import main

    args = ["plan", "--shape", "1024", "1024", "--count", "3", "-o"]
    assert main([*args, str(tmp_path)]) == 2
    assert f"is a folder, not a store file; give the store's file name, e.g. -o " \
        f"{tmp_path / 'data.h5'}" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "data.h5")]) == 0
    assert "disk at the output" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["plan", "prepare"])
@pytest.mark.parametrize("options, said", [
    (["--sigma", "-1"], "--sigma -1.0: must be a finite number ≥ 0"),
    (["--noise", "matched", "--noise-radius", "0"], "--noise-radius 0: must be an integer in "
                                                    "[1, 64]"),
    (["--noise", "matched", "--shot", "2"], "--shot 2.0: must be in [0, 1], or left out to use "
                                            "each micrograph's estimate"),
    (["--noise", "matched", "--alpha", "-1"], "--alpha -1.0: must be a finite number > 0"),
    (["--noise", "none", "--noise-mode", "on-device"], "--noise 'none' stores its inputs: use "
                                                       "--noise-mode 'stored'"),
])
def test_noise_options_are_named_as_the_command_line_gives_them(command, options, said, tmp_path,
                                                                 capsys):
    """plan (and prepare) named the noise options by their Python names (sigma=, radius=,
    shot=; None for no --shot): the options and values given are named instead."""
    from cryostream.cli import main

    where = ["--shape", "1024", "1024", "--count", "3"] if command == "plan" else [
        str(write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))), "-o",
        str(tmp_path / "d.h5")]
    assert main([command, *where, *options]) == 2
    assert capsys.readouterr().err.splitlines() == [f"cryostream {command}: error: {said}"]
    assert not (tmp_path / "d.h5").exists()


def test_split_is_by_name_and_seed_not_order():
    names = [f"mic_{i:03d}" for i in range(50)]
    a = split_micrographs(names, 0.1, seed=0)
    b = split_micrographs(names[::-1], 0.1, seed=0)[::-1]
    assert a == b and a.count("test") == 5
    assert split_micrographs(names, 0.1, seed=1) != a
    assert held_out_count(1, 0.1) == 0 and held_out_count(2, 0.1) == 1 and held_out_count(10, 0) == 0


def test_count_with_inputs_is_refused_not_ignored(tmp_path, capsys):
    """``plan FOLDER --count 3000`` had planned the folder's 3 micrographs, exit 0, with
    --count dropped unsaid; it is refused like --shape with inputs."""
    from cryostream.cli import main

    folder = tmp_path / "mics"
    folder.mkdir()
    for i in range(3):
        write_mrc(folder / f"m{i}.mrc", np.zeros((256, 256), np.float32))
    for extra in (["--count", "3000"], ["--shape", "256", "256"]):
        assert main(["plan", str(folder), *extra]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and extra[0] in err[0] and "not both" in err[0], err
        assert captured.out == ""


def test_one_micrograph_is_counted_in_the_singular():
    """The plan of one micrograph reads '1 micrograph of …', not '1 micrographs'; two, plural."""
    config = PrepareConfig(patch_size=256, stride=128)
    assert plan(shape=(512, 512), count=1, config=config).table().startswith("1 micrograph of 512")
    assert plan(shape=(512, 512), count=2, config=config).table().startswith("2 micrographs of")
