"""The keypoint task: datasets (built-in generator and user files), metrics, the trainer and galleries.

It knows nothing of Optuna or MLflow; the search machinery in `search/` imports it, never the reverse.
Modules: `errors` (DataError), `synthetic` (the generator), `images` (EXIF, 16-bit, padding), `files`
(npz/COCO readers), `splits` (leak-free cuts), `data` (`load_dataset`, data configs), `metrics`, `train`
(`TrainConfig`, `train`), `gallery`. Nothing is imported here, so
importing one module does not pull in torch for the others.
"""

__all__ = ["data", "errors", "files", "gallery", "images", "metrics", "splits", "synthetic", "train"]
