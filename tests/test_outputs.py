"""What a denoised output says of how it was made: the steps of the first note and of the MRC
history label are the options ``NAME.json`` records (cryostream.denoise.outputs)."""

from __future__ import annotations

import pytest

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.outputs import history_label, recipe_steps


@pytest.mark.parametrize("options, steps", [
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True}, ["ensemble", "ctf_gain"]),
    # the general model: its learned weights after the gain
    ({"n2n_correction": False, "ctf_gain": True, "ensemble": True, "learned_weights": True},
     ["ensemble", "ctf_gain", "learned_weights"]),
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
