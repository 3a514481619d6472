"""The keypoint task: datasets (built-in generator and user files), metrics, the trainer and galleries.

It knows nothing of Optuna or MLflow; the search machinery in `search/` imports it, never the reverse.
Modules: `errors` (DataError), `synthetic` (the generator), `files` (npz/COCO readers), `data`
(`load_dataset`), `metrics`, `train` (`TrainConfig`, `train`), `gallery`. Nothing is imported here, so
importing one module does not pull in torch for the others.
"""

__all__ = ["data", "errors", "files", "gallery", "metrics", "synthetic", "train"]
