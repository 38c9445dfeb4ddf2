"""``cryostream denoise``: whole micrographs denoised by the shipped general model or a trained
run.

Also the pipeline flags shared with ``rank`` (:data:`FLAGS`, :func:`add_pipeline_options`,
:func:`denoise_config`): each sets one :class:`~cryostream.config.DenoiseConfig` field.
"""

from __future__ import annotations

import argparse
import time

from cryostream.cli.common import (
    LibraryDefault,
    add_config_flags,
    config_from_args,
    given,
    peak_rss_mb,
)
from cryostream.config import DenoiseConfig

__all__ = ["FLAGS", "OUTPUT_FLAGS", "add_parser", "add_pipeline_options", "add_pixel_size",
           "denoise_config", "run"]


class Typed(argparse.Action):
    """Stores an option's value and adds its name to ``args.typed``: typed at its default
    (``--voltage 300``), it is given as much as at another value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.typed = {*getattr(namespace, "typed", ()), self.dest}


FLAGS = {
    "tile": ("--tile", "side of the part of each window the output keeps, in pixels (default: "
             "the fewest pixels through the network; 3840 for full-size micrographs on a GPU)",
             {"metavar": "PX"}),
    "halo": ("--halo", "pixels of context around it on every side, computed and dropped "
             "(default: the network's receptive field)", {"metavar": "PX"}),
    "batch_size": ("--batch-size", "windows per device call"),
    "precision": ("--precision", "what the network computes in: fp32, or bf16 on a GPU, "
                  "faster but its rounding loses a little of the finest detail; a CPU computes "
                  "in fp32 either way", {"choices": ("fp32", "bf16")}),
    "n2n_correction": ("--n2n-correction", "Noisier2Noise correction (default: on for runs "
                       "trained on noisy micrographs with added noise)"),
    "n2n_clamp": ("--n2n-clamp", "with the correction, zero the spatial-frequency rings where it "
                  "is anti-correlated with the micrograph"),
    "wiener_gain": ("--wiener-gain", "the radial Wiener gain without the CTF (what --ctf-gain "
                    "falls back to where a fit's rings do not lower the error): each "
                    "micrograph's measured noise sets the output's linear response per "
                    "frequency ring; what the network found beyond it is kept"),
    "ensemble": ("--ensemble", "average the network over the 8 rotations and flips (8 passes; "
                 "default: on)"),
    "ctf_gain": ("--ctf-gain", "shape the output's frequency response by each micrograph's CTF "
                 "above 20 Å (fitted from its power spectrum, or a STAR file's defocus), where "
                 "its Thon rings are found and a check without ground truth finds it lowers the "
                 "error; else the radial Wiener gain (below 20 Å only, where no rings are "
                 "found) (default: on). --no-ctf-gain keeps the network's output as it is: "
                 "no gain, learned weights or binned pass, unless --wiener-gain"),
    "learned_weights": ("--learned-weights", "with the Wiener gain, weigh its linear response "
                        "and what the network adds beyond a linear filter, per band of "
                        "frequency, by the table the model ships (fitted on simulated "
                        "micrographs with their truth, looked up by each micrograph's pixel "
                        "size and measured signal-to-noise ratio; default: on for models that "
                        "ship one, like the general model; --no-learned-weights also drops the "
                        "binned pass the table weighs)"),
    "binned_pass": ("--binned-pass", "run the network on each micrograph binned by 2 as well "
                    "(a quarter of the passes' cost) and mix it in per band of frequency by the "
                    "learned weights: on twice the context it keeps more of the structure above "
                    "30 Å (default: on where the model's learned weights weigh it, like the "
                    "general model's)"),
    "voltage_kv": ("--voltage", "accelerating voltage in kV, for --ctf-gain (a STAR file's "
                   "optics table wins)", {"metavar": "KV", "action": Typed}),
    "cs_mm": ("--cs", "spherical aberration in mm, for --ctf-gain (a STAR file's optics wins)",
              {"metavar": "MM", "action": Typed}),
    "amplitude_contrast": ("--amplitude-contrast", "amplitude contrast, a fraction, for "
                           "--ctf-gain (a STAR file's optics wins)",
                           {"metavar": "FRACTION", "action": Typed}),
    "calibrate": ("--calibrate", "fit, per frequency ring, the weight of the output's part beyond "
                  "a linear filter from N recorrupted passes (no truth; N more network passes)",
                  {"metavar": "N"}),
}
"""The :class:`~cryostream.config.DenoiseConfig` fields the pipeline flags set."""

OUTPUT_FLAGS = {
    "output_dtype": ("--dtype", "pixel type of the output MRC files; float16 halves their size, "
                     "RELION reads it, CTFFIND and Gctf do not", {"choices": ("float32",
                                                                            "float16")}),
    "output_suffix": ("--suffix", "added to each output's name, e.g. _denoised (default "
                      "%(default)r: NAME.mrc, the input's own file name)"),
    "keep_extended_header": ("--keep-extended-header", "copy each input's extended header (FEI, "
                             "SerialEM) into its output (origin, pixel size and labels are "
                             "always kept)"),
}
"""The :class:`~cryostream.config.DenoiseConfig` fields of the output files (``denoise`` only)."""


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """The denoising pipeline's options, shared by ``denoise`` and ``rank``: by default the
    best validated recipe for the run; ``--raw`` turns every step off; the research options
    change steps one by one."""
    parser.add_argument("--raw", action="store_true",
                        help="the network's output as it is: no correction, gain or ensemble "
                        "(a step you also name, e.g. --ensemble, still applies)")
    add_config_flags(parser.add_argument_group(
        "advanced: the denoising pipeline (defaults: what the run was trained for)"),
        DenoiseConfig, FLAGS)


def denoise_config(args: argparse.Namespace) -> DenoiseConfig:
    """The :class:`~cryostream.config.DenoiseConfig` the pipeline flags describe (``--raw``:
    every step off unless a flag turns it on).

    Raises
    ------
    ConfigError
        For values the config rejects (e.g. ``--n2n-clamp`` with ``--no-n2n-correction``).
    """
    return config_from_args(DenoiseConfig.raw() if args.raw else DenoiseConfig, args,
                            {path: spec for path, spec in FLAGS.items()
                             if not (args.raw and getattr(args, path) is None)})


def add_pixel_size(parser: argparse.ArgumentParser, what: str) -> argparse.Action:
    """``--pixel-size Å`` (``pixel_size_angstrom``) of ``denoise`` and ``evaluate``: over the
    headers and the STAR file, for ``what`` that lack one (checked by
    :func:`~cryostream.denoise.pixels.check_pixel_size`); the option added."""
    return parser.add_argument("--pixel-size", type=float, dest="pixel_size_angstrom",
                               metavar="Å", help=f"pixel size in Å, over the headers and the STAR "
                               f"file (for {what} that lack one; one twice or half a header's is "
                               "used with a warning)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``denoise`` to the subcommands."""
    p = subparsers.add_parser("denoise", help="denoise whole micrographs with the shipped "
                              "general model or your own run",
                              description="Tiled whole-micrograph denoising; writes MRC files "
                              "(float32 unless --dtype) and a STAR file listing them.")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders, a RELION STAR file or a "
                   "cryoSPARC exposures .cs file (their optics set each micrograph's pixel size "
                   "and CTF optics; their defocus is used instead of a fit)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", metavar="RUN|NAME",
                   help="the model: a run folder from cryostream train, an exported .npz, or a "
                   "shipped model's name (default: general, trained on simulated micrographs "
                   "over a spread of conditions; a run folder given as the first input is "
                   "taken as the model too)")
    p.add_argument("--odd", nargs="*", metavar="ODD",
                   help="odd-frame sums of the micrographs whose even-frame sums are the inputs "
                   "(paired by name: NAME_EVN.mrc with NAME_ODD.mrc, or one name in two "
                   "folders; a STAR file's rlnMicrographNameEven/Odd, each row's two halves "
                   "paired by the row); each output, NAME.mrc, is the sum of the two halves' "
                   "denoised images (the full sum's scale); with no "
                   "value, the inputs are STAR files and their rlnMicrographNameEven/Odd columns "
                   "are used")
    add_pixel_size(p, "inputs")
    add_config_flags(p.add_argument_group("output files (besides them: a NAME.json record each "
                                          "and denoised_micrographs.star for RELION; cryoSPARC "
                                          "imports the MRC files)"),
                     DenoiseConfig, OUTPUT_FLAGS)
    add_pipeline_options(p)
    g = p.add_argument_group("where it runs", "the network's windows, and its calls at once, "
                             "are fitted to the memory there is for it: 80% of what JAX holds "
                             "on a GPU, a quarter of the machine's on a CPU; the environment "
                             "variable CRYOSTREAM_NETWORK_MEMORY_GB=N sets it")
    g.add_argument("--workers", type=int, metavar="N",
                   default=LibraryDefault("cryostream.denoise:denoise", "workers"),
                   help="micrographs in flight (default: half the CPU cores on a GPU, 2 to 8; 2 "
                   "on a CPU; fewer where memory is short)")
    g.add_argument("--scheduler", help="address of an existing Dask scheduler")
    g.add_argument("--cluster-workers", type=int, help="start a LocalCluster of N workers")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs in the folder that another model, other options or "
                   "another cryostream version made (each only by a complete new one); "
                   "outputs this same command would make again the same are kept either way, "
                   "so it resumes after an interruption (delete outputs to make them again); "
                   "outputs made read-only (chmod a-w) are refused, never replaced")
    p.add_argument("--permissive", action="store_true",
                   help="skip bad micrographs (unreadable, NaN or Inf pixels, constant, too "
                   "small; with --odd, halves that do not match) with a warning each and end "
                   "with status 0 and the STAR file of the rest (2 if none is left; an output "
                   "another call wrote meanwhile with other options is no bad micrograph: "
                   "status 2 and no STAR file all the same, naming it); without "
                   "it, a file that cannot be read (missing, empty or not MRC, a broken link; "
                   "with --odd, halves that do not match) stops the command before any "
                   "micrograph is denoised, with an error naming every such file, while pixels "
                   "found bad while denoising (NaN or Inf, constant, too small) leave the good "
                   "micrographs denoised and end the command with an error naming the bad ones "
                   "(status 2, no STAR file)")
    p.set_defaults(func=run)
    return p


def model_and_inputs(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The model (``--model``, a run folder given as the first input, or the shipped general
    model) and the inputs."""
    from pathlib import Path

    from cryostream.denoise.network import DEFAULT_MODEL

    inputs = list(args.inputs)
    if args.model is not None:
        return args.model, inputs
    if len(inputs) > 1 and (Path(inputs[0]) / "config.json").is_file():
        return inputs[0], inputs[1:]
    return DEFAULT_MODEL, inputs


def run(args: argparse.Namespace) -> int:
    """Denoise, then print the count, the speed and the peak memory."""
    from cryostream.cli.prepare import odd_inputs

    config = config_from_args(denoise_config(args), args, OUTPUT_FLAGS)
    model, inputs = model_and_inputs(args)
    odd = odd_inputs(args.odd, inputs)  # --odd alone: the STAR files' odd column
    from cryostream.denoise import denoise
    from cryostream.denoise.network import check_model

    check_model(model)  # named as given

    from cryostream.denoise.pixels import typed_optics
    from cryostream.denoise.pool import NONE_LEFT, AllFinished
    from cryostream.interrupts import told_in_progress

    start = time.perf_counter()
    try:  # the last line on SIGTERM: whether the call finished every micrograph, in its words
        with typed_optics(getattr(args, "typed", ())):  # --voltage 300 as much as 200
            result = denoise(model, inputs, args.output, config=config, overwrite=args.overwrite,
                             scheduler=args.scheduler, cluster_workers=args.cluster_workers,
                             permissive=args.permissive,
                             pixel_size_angstrom=args.pixel_size_angstrom, odd=odd,
                             **given(args, "workers"))
    except AllFinished:  # (SIGTERM as the last were written, or as the STAR file was)
        args.all_finished = True
        raise
    args.all_finished = True  # (a SIGTERM from here on: after the call's end)
    with told_in_progress(lambda: NONE_LEFT):  # (a first Ctrl-C's note: none left to finish)
        _summary(args, result, time.perf_counter() - start)
    return 0


def _summary(args: argparse.Namespace, result, seconds: float) -> None:
    """Print how many micrographs ``result`` holds, the speed over ``seconds`` and the peak
    memory."""
    from cryostream.io.paths import shown_path

    kept = result.attrs.get("kept", 0)
    n = result.sizes["micrograph"] - kept
    skipped = result.attrs.get("skipped", 0)
    rate = ("" if n == 0 else f"{n / seconds:.2f} micrographs/s, " if n >= seconds
            else f"{seconds / n:.1f} s per micrograph, ")
    print(f"denoised {n} micrograph{'' if n == 1 else 's'} into {shown_path(args.output)}"
          + (f" ({kept} finished earlier, kept)" if kept else "")
          + (f" ({skipped} skipped: see the warnings)" if skipped else "")
          + f", listed in {shown_path(result.attrs['star'])}: {seconds:.1f} s, {rate}peak memory "
          f"{peak_rss_mb():,.0f} MB" + (_workers_memory(args.scheduler) if args.scheduler
                                        else ""))


def _workers_memory(scheduler: str) -> str:
    """Where the workers' peak memory is seen, after this process's: on the scheduler's
    dashboard, where it serves one (not where it serves none)."""
    from cryostream.dashboard import dashboard_served

    if dashboard_served(scheduler) is False:
        return (" here (the workers' is not seen from here: the scheduler serves no dashboard; "
                "without --no-dashboard it serves one that shows it)")
    return " here (the workers': see the dashboard)"
