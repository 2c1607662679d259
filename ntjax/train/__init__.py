"""Training: preparing the data (``prepare``), the jitted step (``step``), the one loop over a
member axis (``loop``; a single fit is a run of one), populations and stacked ensembles
(``population``), checkpoints, and the records of training runs (``records``)."""

from ntjax.train.fit import fit, train
from ntjax.train.loop import Progress
from ntjax.train.population import (
    Member,
    Population,
    PopulationError,
    fit_ensemble,
    fit_population,
    train_seeds,
)
from ntjax.train.prepare import Prepared, TrainingData, prepare
from ntjax.train.records import new_record
from ntjax.train.step import Trainer, TrainState

__all__ = [
    "Member",
    "Population",
    "PopulationError",
    "Prepared",
    "Progress",
    "TrainState",
    "Trainer",
    "TrainingData",
    "fit",
    "fit_ensemble",
    "fit_population",
    "new_record",
    "prepare",
    "train",
    "train_seeds",
]
