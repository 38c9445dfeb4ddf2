# SIGTERM and a closed pipe with `cryostream denoise` on a GPU machine: how soon it ends, what it keeps,
# and whether the same command again gives the uninterrupted run's outputs bit for bit. Needs dask,
# mrcfile and the other wheels beside it in .whl/ (see docs/benchmarks.md); run from the checkout.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1; nvidia-smi --query-gpu=name --format=csv,noheader
cd /tmp && python3 -m cryostream simulate sim --count 12 --shape 4096 4096 --quiet; echo "simulated rc $?"
# 1: a full run for the time each takes
/usr/bin/time -f "full run %e s" python3 -m cryostream denoise sim/micrographs -o full > full.log 2>&1; echo "full rc $?"; tail -3 full.log
# 2: SIGTERM after the third output appears
python3 -m cryostream denoise sim/micrographs -o term > term.log 2>&1 & P=$!
while [ $(ls term/*.json 2>/dev/null | wc -l) -lt 3 ]; do sleep 0.1; done; T=$(date +%s.%N); kill -TERM $P; wait $P; rc=$?; E=$(date +%s.%N)
echo "SIGTERM: rc $rc, ended $(python3 -c "print(round($E-$T,2))") s after; outputs $(ls term/*.mrc | wc -l) mrc, $(ls term/*.json | wc -l) json; hidden: $(ls -A term | grep '^\.' | tr '\n' ' ')"; tail -3 term.log
sleep 3; echo "3 s later: $(ls term/*.mrc | wc -l) mrc, $(ls -A term | wc -l) entries"
python3 -m cryostream denoise sim/micrographs -o term > term2.log 2>&1; echo "rerun rc $?"; tail -2 term2.log; ls term/*.mrc | wc -l
python3 - <<'P'
import mrcfile, numpy as np, glob, os
a=sorted(glob.glob('/tmp/full/*.mrc')); same=sum(np.array_equal(mrcfile.read(f), mrcfile.read('/tmp/term/'+os.path.basename(f))) for f in a)
print(f"rerun outputs equal to the full run's bit for bit: {same} of {len(a)}")
P
# 3: piped into head -1, then Ctrl-C
python3 -m cryostream denoise sim/micrographs -o piped 2>&1 | head -1; echo "piped: rc ${PIPESTATUS[0]}, $(ls piped/*.mrc | wc -l) mrc, star $(ls piped/*.star 2>/dev/null)"
# 4: Ctrl-C after the third output (from Python: a shell script's background job ignores SIGINT): the
# note's time for the micrographs in progress, against the time they took
python3 - <<'P'
import glob, signal, subprocess, time
log = open("/tmp/int.log", "w")
p = subprocess.Popen(["python3", "-m", "cryostream", "denoise", "sim/micrographs", "-o", "int"], stderr=log)
while len(glob.glob("int/*.json")) < 3:
    time.sleep(0.1)
t = time.time(); p.send_signal(signal.SIGINT); rc = p.wait(); e = time.time()
notes = [l for l in open("/tmp/int.log") if "stopping after" in l or "Ctrl-C" in l]
print(f"Ctrl-C: rc {rc}, ended {e - t:.1f} s after the signal; {len(glob.glob('int/*.mrc'))} mrc, "
      f"{len(glob.glob('int/*.json'))} json, star {glob.glob('int/*.star')}")
print("".join(notes[:3]) + "".join(open("/tmp/int.log").readlines()[-2:]), end="")
P
