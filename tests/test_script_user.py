"""What a scientist meets calling cryostream from a script on a laptop: the notes the command
line gives are given to the script too, and what a script has in hand is taken."""

from __future__ import annotations

import pytest

import cryostream


@pytest.fixture(scope="module")
def mics(tmp_path_factory):
    """Two real simulated micrographs of 256² px, the least the general model takes."""
    return cryostream.simulate(tmp_path_factory.mktemp("script") / "sim", 2, shape=(256, 256),
                               seed=3).micrographs


def test_a_script_is_told_that_the_default_noise_is_made_up(mics, tmp_path, notes):
    """``prepare`` from Python with the default noise said nothing of it (only the command line
    did, and the guide says prepare says so): a script trained on made-up noise unwarned. It
    names the option in a script's words; with a noise chosen, or no notes asked for, nothing."""
    config = cryostream.PrepareConfig(patch_size=64)
    cryostream.prepare(mics, tmp_path / "a.h5", config)
    made_up = [n for n in notes if "noise is the default" in n]
    assert made_up == [
        "the store's noise is the default, poisson-gaussian of dose 10 and σ 0.05: made up, not "
        "measured from these micrographs; a denoiser of them learns from noise like their own: "
        "--noise matched (Python: PrepareConfig(noise=NoiseConfig(model='matched'))) (or "
        "cryostream fit, which prepares and trains so; Python: cryostream.fit)"]
    notes.clear()
    cryostream.prepare(mics, tmp_path / "a.h5", config)  # the finished store kept: said again
    assert [n for n in notes if "noise is the default" in n] == made_up
    notes.clear()
    gaussian = cryostream.PrepareConfig(patch_size=64,
                                        noise=cryostream.NoiseConfig(model="gaussian"))
    cryostream.prepare(mics, tmp_path / "b.h5", gaussian)
    cryostream.prepare(mics, tmp_path / "c.h5", config, progress=False)
    assert not [n for n in notes if "noise is the default" in n]


def test_a_client_or_a_cluster_in_hand_is_taken_as_its_scheduler(mics, tmp_path):
    """A script that made its own cluster (``LocalCluster``, ``Client``) and gave it as
    ``scheduler=`` was refused as "not a scheduler address", though the object knows it: both
    are taken (the same store as by the address), and a closed one is named as closed."""
    from distributed import Client, LocalCluster

    config = cryostream.PrepareConfig(patch_size=64,
                                      noise=cryostream.NoiseConfig(model="gaussian"))
    reference = cryostream.prepare(mics, tmp_path / "threads.h5", config)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as cluster, Client(cluster) as client:
        by_cluster = cryostream.prepare(mics, tmp_path / "cluster.h5", config, scheduler=cluster)
        by_client = cryostream.prepare(mics, tmp_path / "client.h5", config, scheduler=client)
        denoised = cryostream.denoise("general", mics[:1], tmp_path / "den", scheduler=client,
                                      config=cryostream.DenoiseConfig.raw())
    for result in (by_cluster, by_client):
        assert not result.kept and result.train_patches == reference.train_patches
    assert denoised.sizes["micrograph"] == 1
    closed = r"^scheduler=<Client: No scheduler connected> \(--scheduler\): a closed Client has no "
    with pytest.raises(cryostream.ConfigError, match=closed + "scheduler; give one that runs"):
        cryostream.prepare(mics, tmp_path / "late.h5", config, scheduler=client)
    assert not (tmp_path / "late.h5").exists()
