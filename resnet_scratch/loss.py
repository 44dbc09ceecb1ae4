"""The training loss: cross-entropy with label smoothing, plus InceptionV3's weighted auxiliary term.

A study with other labels (for example partial labels) subclasses CrossEntropy and passes its own
to `fit` through its Study; the training loop only calls the loss and its `correct`.
"""

from torch import Tensor
from torch.nn import functional as F

from .models.inception import InceptionOutputs


class CrossEntropy:
    """Mean cross-entropy of a batch (computed in float32), and how many of its predictions are right."""

    def __init__(self, label_smoothing: float = 0.0, aux_weight: float = 0.4) -> None:
        self.label_smoothing = label_smoothing
        self.aux_weight = aux_weight

    def __call__(self, output: Tensor | InceptionOutputs, target: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, logits); InceptionV3 in training adds aux_weight x its auxiliary head's loss."""
        if isinstance(output, InceptionOutputs):
            main = self.of_logits(output.logits, target)
            return main + self.aux_weight * self.of_logits(output.aux_logits, target), output.logits
        return self.of_logits(output, target), output

    def of_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        """The mean loss of one head's logits."""
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def correct(self, logits: Tensor, target: Tensor) -> Tensor:
        """How many predictions are right (a 0-d tensor, left on the device)."""
        return (logits.argmax(1) == target).sum()
