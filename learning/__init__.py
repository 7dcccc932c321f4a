"""The learned models' life cycle: training data from the records store, training, validation, the model card.

Layer: below ``guardrails``, above ``tools`` (``learning`` may import ``tools``, ``store`` and ``runtime``;
nothing below imports ``learning``). A learned score prioritises outreach; it is never the basis of a coverage
decision (CMS-4201-F).
"""
