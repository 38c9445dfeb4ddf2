"""Quality of a trained run beside the baselines: a store's test split, simulated ground truth
(only the micrographs held out of the run's training), and the residual check.
:mod:`~cryostream.evaluate.numbers` computes, :mod:`~cryostream.evaluate.held_out` picks the
micrographs, :mod:`~cryostream.evaluate.verdict` says whether a residual is noise-like,
:mod:`~cryostream.evaluate.figures` draws, :mod:`~cryostream.evaluate.report` writes."""

from cryostream.evaluate.figures import plot_method_noise
from cryostream.evaluate.held_out import TruthSelection, select_held_out
from cryostream.evaluate.numbers import compare_on_store, method_noise
from cryostream.evaluate.report import evaluate, summary_lines

__all__ = ["compare_on_store", "evaluate", "method_noise", "plot_method_noise", "select_held_out",
           "summary_lines", "TruthSelection"]
