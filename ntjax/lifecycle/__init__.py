"""The model lifecycle: fine-tuning and transfer, the retraining pipeline with its promotion
gate, and compression (quantised records, distilled students)."""

from ntjax.lifecycle.distill import distill
from ntjax.lifecycle.finetune import SCALER_POLICIES, fine_tuning_defaults, finetune
from ntjax.lifecycle.quantize import quantize
from ntjax.lifecycle.retrain import RetrainDecision, RetrainPolicy, retrain

__all__ = [
    "SCALER_POLICIES",
    "RetrainDecision",
    "RetrainPolicy",
    "distill",
    "fine_tuning_defaults",
    "finetune",
    "quantize",
    "retrain",
]
