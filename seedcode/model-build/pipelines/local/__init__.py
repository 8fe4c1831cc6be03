"""Run a SageMaker pipeline definition on this machine (no Docker, no SageMaker jobs)."""
