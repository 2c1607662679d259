"""The model lifecycle: fine-tuning and transfer, the retraining pipeline with its promotion
gate, and compression (quantised records, distilled students)."""

from ntjax.lifecycle.finetune import SCALER_POLICIES, fine_tuning_defaults, finetune

__all__ = ["SCALER_POLICIES", "fine_tuning_defaults", "finetune"]
