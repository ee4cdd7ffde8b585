"""FedAvg inversion: invert a weight delta by unrolling the client's local steps.

Geiping et al., "Inverting Gradients", NeurIPS 2020, Sec. 6: a FedAvg client uploads
``w_E - w_0`` after E SGD steps with learning rate eta on its B examples. The attacker knows
E, eta and the mini-batch size (the FL configuration fixes them) and runs the very same steps
on dummy data, differentiably: the dummy delta comes from
:func:`gradleak.federated.local_update`, the client's own code, with each step's gradient kept
on the graph (``batch_gradient(create_graph=True)``), so the attacker's model of the client is
exactly the client. The delta is matched with IG's cosine distance and TV prior, signed Adam.

``unroll=false`` is the naive baseline for comparison: treat the delta as one gradient
(``-delta / (eta E)``), i.e. pretend the client ran FedSGD.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


from gradleak.attacks import register
from gradleak.attacks.inverting import InvertingGradients
from gradleak.attacks.labels import mean_gradient
from gradleak.errors import GradleakError
from gradleak.threat import LocalTraining, Reconstruction, ServerView


@register
class FedAvgInversion(InvertingGradients):
    name = "fedavg"

    @dataclass(frozen=True)
    class Config(InvertingGradients.Config):
        unroll: bool = True  # False: the baseline that treats the delta as one gradient

    def reconstruct(self, view: ServerView) -> Reconstruction:
        if view.kind != "delta":
            raise GradleakError(
                "the fedavg attack inverts a FedAvg weight delta, but this view holds a FedSGD gradient; "
                "use ig, dlg or idlg, or make the client run several local steps (--local-steps)"
            )
        if self.config.unroll:
            reconstruction = super().reconstruct(view)
        else:
            reconstruction = super().reconstruct(as_gradient(view))
        reconstruction.info["unroll"] = self.config.unroll
        return reconstruction


def as_gradient(view: ServerView) -> ServerView:
    """The view as if the client had uploaded one gradient: ``-delta / (eta E)``."""
    return dataclasses.replace(view, update=tuple(mean_gradient(view, u) for u in view.update), local=LocalTraining())
