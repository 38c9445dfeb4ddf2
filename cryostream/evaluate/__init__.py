"""Quality of a trained run beside the baselines: a store's test split, simulated ground truth,
and the residual check. :mod:`~cryostream.evaluate.numbers` computes,
:mod:`~cryostream.evaluate.figures` draws, :mod:`~cryostream.evaluate.report` writes."""

from cryostream.evaluate.figures import plot_method_noise
from cryostream.evaluate.numbers import compare_on_store, method_noise
from cryostream.evaluate.report import evaluate

__all__ = ["compare_on_store", "evaluate", "method_noise", "plot_method_noise"]
