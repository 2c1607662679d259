"""The model lifecycle: fine-tuning and transfer, the retraining pipeline with its promotion
gate, and compression (quantised records, distilled students)."""
