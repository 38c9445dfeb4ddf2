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


def test_a_client_or_a_cluster_in_hand_is_taken_as_its_scheduler(mics, tiny_run, tmp_path):
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
        denoised = cryostream.denoise(tiny_run.run, mics[:1], tmp_path / "den", scheduler=client,
                                      config=cryostream.DenoiseConfig.raw())  # (a quick network)
    for result in (by_cluster, by_client):
        assert not result.kept and result.train_patches == reference.train_patches
    assert denoised.sizes["micrograph"] == 1
    closed = r"^scheduler=<Client: No scheduler connected> \(--scheduler\): a closed Client has no "
    with pytest.raises(cryostream.ConfigError, match=closed + "scheduler; give one that runs"):
        cryostream.prepare(mics, tmp_path / "late.h5", config, scheduler=client)
    assert not (tmp_path / "late.h5").exists()


#: A script that denoises micrographs (its arguments after the output folder) one at a time,
#: its notes on stderr.
_DENOISING = """
import logging, sys
import cryostream
logging.basicConfig(format="%(message)s")
logging.getLogger("cryostream").setLevel(logging.INFO)
cryostream.denoise("general", sys.argv[2:], sys.argv[1], workers=1,
                   config=cryostream.DenoiseConfig.raw())
"""


def _interrupted_script(cwd, output, inputs, when) -> tuple[int, str]:
    """Run :data:`_DENOISING` into ``output`` in a child process and send it a real SIGINT each
    time one of ``when`` (a test of its stderr so far) holds, 0.3 s apart at least; its status
    and stderr."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.faults_support import child_environment, wait_until

    proc = subprocess.Popen([sys.executable, "-c", _DENOISING, output, *map(str, inputs)], cwd=cwd,
                            env=child_environment(), stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        for ready in when:
            assert wait_until(proc, lambda ready=ready: ready("".join(err)), timeout=300), err
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        proc.kill()
        reader.join(timeout=10)
    return proc.returncode, "".join(err)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_ctrl_c_in_a_scripts_denoise_says_what_it_waits_for_and_what_is_kept(tmp_path):
    """A real Ctrl-C to a script's ``denoise``: it had waited in silence for the micrograph in
    progress (minutes on a CPU), then ended on a bare ``KeyboardInterrupt``, and a second
    Ctrl-C had waited all the same, in two tracebacks. Now the first is answered at once, the
    traceback ends saying what is kept and how to go on, and a second gives up the micrograph
    in progress (nothing of it written) in one traceback; the same script again finishes."""
    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(512, 512), seed=4)
    stems = [p.stem for p in sim.micrographs]

    def written(out: str) -> list[str]:
        return sorted(p.name for p in (tmp_path / out).iterdir())

    from cryostream.denoise.pool import SCRIPT_STOPPING

    def kept(out: str) -> str:
        return (f"KeyboardInterrupt: interrupted: the finished micrographs are kept in {out}; "
                "call denoise again with the same arguments to denoise the rest (it skips the "
                "finished ones) and write denoised_micrographs.star")

    second_under_way = [lambda err: "denoised 1/3 " in err]  # (one at a time)
    status, err = _interrupted_script(tmp_path, "out", sim.micrographs, second_under_way)
    assert status in (-2, 130) and SCRIPT_STOPPING in err.splitlines(), err
    assert err.splitlines()[-1] == kept("out"), err
    assert written("out") == sorted(f"{s}.{e}" for s in stems[:2] for e in ("json", "mrc"))
    status, err = _interrupted_script(tmp_path, "out2", sim.micrographs, [
        *second_under_way, lambda err: SCRIPT_STOPPING in err])
    assert status in (-2, 130) and err.splitlines()[-1] == kept("out2"), err
    assert "During handling" not in err, err
    assert written("out2") == sorted(f"{stems[0]}.{e}" for e in ("json", "mrc")), err
    status, err = _interrupted_script(tmp_path, "out", sim.micrographs, [])
    assert status == 0, err
    assert written("out") == sorted([f"{s}.{e}" for s in stems for e in ("json", "mrc")]
                                    + ["denoised_micrographs.star"])


#: :data:`_DENOISING` with the default recipe's many network passes a micrograph, each slowed
#: by a second as on a slow CPU, a note after each; each pass begun is told in the file
#: ``PASSES`` (the first argument), where the test marks its second Ctrl-C. The output folder
#: comes second, the model third.
_MANY_PASSES = """
import logging, sys, time
import cryostream
from cryostream.denoise import micrograph
logging.basicConfig(format="%(message)s")
logging.getLogger("cryostream").setLevel(logging.INFO)
passes, plain = open(sys.argv[1], "a", buffering=1), micrograph.network_pass
def slowed(*args, **kwargs):
    passes.write("pass\\n")
    time.sleep(1)
    return plain(*args, **kwargs)
micrograph.network_pass, micrograph.NOTE_EVERY_S = slowed, 0.0
cryostream.denoise(sys.argv[3], sys.argv[4:], sys.argv[2], workers=1,
                   config=cryostream.DenoiseConfig(ctf_gain=False))
"""


def test_a_scripts_second_ctrl_c_starts_no_pass_of_the_micrograph_given_up(tiny_run, tmp_path):
    """A script's second Ctrl-C gives the micrograph in progress up, the call raising at once;
    but its thread went on through every network pass left (eight and more a micrograph with
    the default ensemble, a minute or more each on a CPU), writing nothing, and the script's
    process, which waits for it as it exits, ended only then. Now the thread starts no pass
    more: the process ends once the pass under way is done."""
    import signal
    import subprocess
    import sys
    import threading

    from cryostream.denoise.pool import SCRIPT_STOPPING
    from tests.faults_support import child_environment, wait_until

    passes = tmp_path / "passes.txt"  # (the shared run's network: quicker than the general one)
    proc = subprocess.Popen([sys.executable, "-c", _MANY_PASSES, str(passes), "out",
                             str(tiny_run.run), str(tiny_run.sim.micrographs[0])], cwd=tmp_path,
                            env=child_environment(), stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        assert wait_until(proc, lambda: "network pass 1 of " in "".join(err), timeout=300), err
        proc.send_signal(signal.SIGINT)
        assert wait_until(proc, lambda: SCRIPT_STOPPING in "".join(err), timeout=60), err
        with open(passes, "a") as told:
            told.write("second Ctrl-C\n")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        proc.kill()
        reader.join(timeout=10)
    said = "".join(err)
    assert proc.returncode in (-2, 130) and said.splitlines()[-1] == (
        "KeyboardInterrupt: interrupted: no micrograph was finished and nothing was written; "
        "call denoise again with the same arguments to denoise them"), said
    told = passes.read_text().splitlines()
    after = told[told.index("second Ctrl-C") + 1:]
    assert len(told) - 1 - len(after) < 8 and len(after) <= 1, told  # the one under way at most
    assert not (tmp_path / "out").exists()


#: A script that denoises micrographs (its arguments after the output folder) on a cluster of
#: its own, given as ``scheduler=`` (a LocalCluster of threads), each network pass slowed by a
#: quarter of a second (the ensemble's eight: two seconds a micrograph at least, which the test
#: waits for after its Ctrl-C) and told in the file ``PASSES`` (the first argument) as it
#: begins.
_ON_ITS_CLUSTER = """
import sys, time
import cryostream
from cryostream.denoise import micrograph
from distributed import LocalCluster
passes, plain = open(sys.argv[1], "a", buffering=1), micrograph.network_pass
def slowed(*args, **kwargs):
    passes.write("pass\\n")
    time.sleep(0.25)
    return plain(*args, **kwargs)
micrograph.network_pass = slowed
if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as cluster:
        cryostream.denoise(sys.argv[3], sys.argv[4:], sys.argv[2], scheduler=cluster,
                           config=cryostream.DenoiseConfig(ensemble=True, ctf_gain=False))
"""


def test_ctrl_c_in_a_scripts_denoise_on_its_own_cluster_is_answered_at_once(tiny_run, tmp_path):
    """A script's ``denoise`` on a cluster it gave as ``scheduler=`` (now taken): a Ctrl-C waited
    in silence for the micrographs under way on the workers (minutes each on a CPU), where the
    same call in a thread pool warns at once. Now it is answered at once there too, once, in
    the cluster's words, and the ``KeyboardInterrupt`` says what is kept."""
    import signal
    import subprocess
    import sys
    import threading

    from cryostream.denoise.cluster_pool import CLUSTER_STOPPING
    from cryostream.denoise.pool import SCRIPT_STOPPING
    from tests.faults_support import child_environment, wait_until

    passes = tmp_path / "passes.txt"
    proc = subprocess.Popen([sys.executable, "-c", _ON_ITS_CLUSTER, str(passes), "out",
                             str(tiny_run.run), *map(str, tiny_run.sim.micrographs)], cwd=tmp_path,
                            env=child_environment(), stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        assert wait_until(proc, lambda: passes.is_file() and bool(passes.read_text()),
                          timeout=300), "".join(err)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        proc.kill()
        reader.join(timeout=10)
    lines = "".join(err).splitlines()
    assert proc.returncode in (-2, 130), lines
    # (the warning in the format of the logging distributed set up: WARNING:cryostream:...)
    said = [i for i, line in enumerate(lines) if line.endswith(CLUSTER_STOPPING)]
    assert len(said) == 1 and not any(SCRIPT_STOPPING in line for line in lines), lines
    assert said[0] < lines.index("Traceback (most recent call last):")  # at once
    assert lines[-1] == ("KeyboardInterrupt: interrupted: the finished micrographs are kept in "
                         "out; call denoise again with the same arguments to denoise the rest (it "
                         "skips the finished ones) and write denoised_micrographs.star"), lines


#: A script that denoises micrographs (its arguments after the model) into the folder given
#: second, on the scheduler whose address is given first: one it does not own, whose workers
#: go on after it.
_ON_A_SCHEDULER = """
import sys
import cryostream
if __name__ == "__main__":
    cryostream.denoise(sys.argv[3], sys.argv[4:], sys.argv[2], scheduler=sys.argv[1],
                       config=cryostream.DenoiseConfig(ensemble=False, ctf_gain=False))
"""


@pytest.mark.slow
def test_a_scripts_second_ctrl_c_on_a_scheduler_says_its_workers_may_still_write(
        tiny_run, tmp_path, monkeypatch):
    """A script's ``denoise`` on a scheduler given by address (here a LocalCluster this test
    starts, its workers threads of this process), Ctrl-C twice while a micrograph is under way
    on the worker: the ``KeyboardInterrupt`` said that no micrograph was finished and nothing
    was written, but the worker, which the call does not close, went on and wrote that
    micrograph, whole with its record, after the script had ended. Now it says that the
    cluster's workers may still write those, and that the same call again skips the finished
    ones (that one, here)."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    import mrcfile
    from distributed import LocalCluster

    from cryostream.denoise import micrograph
    from cryostream.denoise.cluster_pool import CLUSTER_STOPPING
    from tests.faults_support import child_environment, wait_until

    passes: list[float] = []
    plain = micrograph.network_pass

    def slowed(*args, **kwargs):  # on the worker: a pass of 3 s at least, as on a slow CPU
        passes.append(time.monotonic())
        time.sleep(3)
        return plain(*args, **kwargs)

    monkeypatch.setattr(micrograph, "network_pass", slowed)
    out = tmp_path / "out"  # (absolute: the worker's folder is this process's, not the script's)

    def written() -> list[str]:
        return sorted(p.name for p in out.iterdir()) if out.exists() else []

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as cluster:
        proc = subprocess.Popen([sys.executable, "-c", _ON_A_SCHEDULER, cluster.scheduler_address,
                                 str(out), str(tiny_run.run), *map(str, tiny_run.sim.micrographs)],
                                cwd=tmp_path, env=child_environment(), stderr=subprocess.PIPE,
                                text=True)
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
        reader.start()
        try:
            assert wait_until(proc, lambda: bool(passes), timeout=300), "".join(err)
            proc.send_signal(signal.SIGINT)
            assert wait_until(proc, lambda: CLUSTER_STOPPING in "".join(err), timeout=60), err
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            reader.join(timeout=10)
        at_the_end = [n for n in written() if not n.startswith(".")]
        deadline = time.monotonic() + 120  # the worker goes on with its micrograph
        while not any(n.endswith(".json") for n in written()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        later = written()
        monkeypatch.setattr(micrograph, "network_pass", plain)  # the same call again:
        again = cryostream.denoise(tiny_run.run, tiny_run.sim.micrographs, out,
                                   scheduler=cluster.scheduler_address,
                                   config=cryostream.DenoiseConfig(ensemble=False, ctf_gain=False))
    lines = "".join(err).splitlines()
    assert proc.returncode in (-2, 130), lines
    assert lines[-1] == (
        f"KeyboardInterrupt: interrupted: the finished micrographs are kept in {out}, and the "
        "cluster's workers, which go on after this call, may still write there the micrographs "
        "they were denoising, each whole with its record; call denoise again with the same "
        "arguments to denoise the rest (it skips the finished ones) and write "
        "denoised_micrographs.star"), lines
    assert at_the_end == []  # none finished as the script ended; the worker's written since:
    name = later[0].rsplit(".", 1)[0] if later else None  # the one under way, of one thread
    assert name in {m.stem for m in tiny_run.sim.micrographs}, later
    assert later == [f"{name}.json", f"{name}.mrc"], later  # whole, with its record
    with mrcfile.open(out / f"{name}.mrc", permissive=False) as mrc:
        assert mrc.data.shape == (160, 128)
    assert again.attrs["kept"] == 1 and again.sizes["micrograph"] == 3  # it skips that one
