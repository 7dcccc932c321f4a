"""The scripted model server the tests use: the one careloom ships for evaluation (:mod:`evaluation.scripted_model`)."""

from evaluation.scripted_model import *  # noqa: F403
from evaluation.scripted_model import __all__  # noqa: F401
