"""Leak-free train/val/test cuts of a file dataset: instances from one source image stay in one split.

In COCO data several people come from one image and their crops overlap through the margins; cutting at the
instance level would put the same pixels in train and test. `cut` keeps every group (source image) whole
with scikit-learn's `GroupShuffleSplit`: test first, then val from the rest, each taking the number of
groups closest to the requested share of instances (at least one), so their instance counts are close to
n_test / n_val but not exact when groups hold several instances; with one instance per group they are exact.
Train is what is left (n_train = -1) or n_train instances of it (a subset within train cannot leak).
Everything is drawn from `seed`: the same seed gives the same split, another seed another one.
"""

from __future__ import annotations

import numpy as np

from search.task.errors import DataError

__all__ = ["cut", "take"]


def _rng_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def cut(
    label: str, groups: np.ndarray, *, n_train: int, n_val: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted index arrays (train, val, test) into `groups` (N,); n_val/n_test 0 = empty split. Raises DataError."""
    from sklearn.model_selection import GroupShuffleSplit  # slow import: only file datasets need it

    total = len(groups)
    fixed = n_val + n_test
    if total == 0:
        raise DataError(f"{label}: the dataset is empty")
    if fixed >= total or (n_train >= 0 and n_train + fixed > total):
        want = "the rest (n_train=-1)" if n_train < 0 else str(n_train)
        raise DataError(
            f"{label}: asked for {want} train + {n_val} val + {n_test} test instances but the file has {total}"
        )
    _, codes = np.unique(groups, return_inverse=True)
    rest = np.arange(total)
    parts: dict[str, np.ndarray] = {}
    for name, n, stream in (("test", n_test, 1), ("val", n_val, 2)):
        if n == 0:
            parts[name] = rest[:0]
            continue
        g = codes[rest]
        n_groups = len(np.unique(g))
        k = max(1, round(n * n_groups / len(rest)))
        if k >= n_groups:
            raise DataError(
                f"{label}: {name} needs {k} of the {n_groups} source images left; keeping images whole leaves "
                "none for the other splits; ask for fewer instances"
            )
        splitter = GroupShuffleSplit(n_splits=1, test_size=k, random_state=_rng_seed(seed, stream))
        keep, held = next(splitter.split(rest, groups=g))
        parts[name], rest = rest[held], rest[keep]
    if n_train >= 0 and n_train > len(rest):
        raise DataError(
            f"{label}: keeping each source image in one split gave {len(parts['val'])} val and "
            f"{len(parts['test'])} test instances, leaving {len(rest)} for n_train={n_train}; "
            "lower n_train or use n_train = -1"
        )
    train = rest if n_train < 0 else take(label, rest, n_train, seed, stream=3)
    return train, parts["val"], parts["test"]


def take(label: str, index: np.ndarray, n: int, seed: int, *, stream: int) -> np.ndarray:
    """n of `index` (sorted; -1 = all), drawn by `seed`. Raises DataError when there are fewer."""
    if n < 0:
        return index
    if n > len(index):
        raise DataError(f"{label}: asked for {n} instances but there are {len(index)}")
    rng = np.random.Generator(np.random.PCG64(_rng_seed(seed, stream)))
    return np.sort(rng.permutation(index)[:n])
