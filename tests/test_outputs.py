"""What a denoised output says of how it was made: the steps of the first note and of the MRC
history label are the options ``NAME.json`` records (cryostream.denoise.outputs)."""

from __future__ import annotations

import pytest

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.outputs import history_label, recipe_steps


@pytest.mark.parametrize("options, steps", [
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True}, ["ensemble", "ctf_gain"]),
    # the general model: its learned weights after the gain
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True, "learned_weights": True,
      "binned_pass": True}, ["ensemble", "ctf_gain", "learned_weights", "binned_pass"]),
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True, "learned_weights": True,
      "binned_pass": False}, ["ensemble", "ctf_gain", "learned_weights"]),
    # a fit's run: the correction (which keeps the input's mean) and the CTF-shaped gain
    ({"n2n_correction": True, "ctf_gain": True, "ensemble": False},
     ["n2n_correction", "ctf_gain"]),
    ({"n2n_correction": True, "n2n_clamp": True, "ctf_gain": False, "wiener_gain": True,
      "ensemble": True, "calibrate": 4},
     ["ensemble", "n2n_correction", "n2n_clamp", "wiener_gain", "calibrate=4"]),
    ({"n2n_correction": False, "ctf_gain": False, "ensemble": False}, []),
])
def test_the_steps_are_named_by_the_options_that_turn_them_on(options, steps):
    config = DenoiseConfig(**{"learned_weights": False, **options})
    assert recipe_steps(config) == steps
    recorded = to_dict(config)  # as NAME.json holds it
    for step in steps:
        name, _, value = step.partition("=")
        assert recorded[name] == (int(value) if value else True), step
    label = history_label("/data/runs/general_model.npz", config)
    assert label == "cryostream denoise general_model.npz" + (f" {'+'.join(steps)}" if steps
                                                              else "")


def test_the_label_names_the_radial_gain_where_the_ctf_check_failed():
    """The label says what was applied: a CTF-shaped gain that failed its check (NAME.json:
    ``ctf_used`` false) was the radial Wiener gain."""
    config = DenoiseConfig(n2n_correction=False, ctf_gain=True, ensemble=True,
                           learned_weights=False)
    run = "/data/runs/general_model.npz"
    assert history_label(run, config, {"ctf_used": True}).endswith(" ensemble+ctf_gain")
    assert history_label(run, config, {"ctf_used": False}).endswith(" ensemble+wiener_gain")
    assert history_label(run, config, {}).endswith(" ensemble+ctf_gain")  # nothing found yet


def test_an_output_made_otherwise_is_refused_in_the_caller_s_own_words(tiny_run, tmp_path, capsys):
    """Denoising into a folder that holds an output made with other options: a Python caller is
    told ``overwrite=True`` and ``output=``, the command line ``--overwrite`` and ``-o`` alone;
    a rerun's note says ``--overwrite`` recomputes the finished ones, without the Python form."""
    import shutil

    import cryostream
    from cryostream.cli import main
    from cryostream.errors import ConfigError

    source = tmp_path / "a.mrc"
    shutil.copy(tiny_run.sim.micrographs[0], source)
    out = tmp_path / "out"
    cryostream.denoise(tiny_run.run, [source], out, config=DenoiseConfig.raw(tile=64), workers=1)
    other = DenoiseConfig.raw(tile=64, output_dtype="float16")
    with pytest.raises(ConfigError) as refused:
        cryostream.denoise(tiny_run.run, [source], out, config=other, workers=1)
    assert str(refused.value) == (
        f"{out / 'a.mrc'} exists and is not this run's output for {source} with these options; "
        "pass --overwrite (Python: overwrite=True) to replace it, or choose another output "
        "folder: -o DIR (Python: output=DIR)")
    argv = ["denoise", str(tiny_run.run), str(source), "-o", str(out), "--raw", "--tile", "64",
            "--workers", "1"]
    capsys.readouterr()
    assert main([*argv, "--dtype", "float16"]) == 2
    assert capsys.readouterr().err == (
        f"cryostream denoise: error: {out / 'a.mrc'} exists and is not this run's output for "
        f"{source} with these options; pass --overwrite to replace it, or choose another output "
        "folder: -o DIR\n")
    assert main(argv) == 0
    assert (f"cryostream: 1 of 1 micrographs already denoised in {out} with this run and these "
            "options; kept (--overwrite recomputes them)\n") in capsys.readouterr().err
