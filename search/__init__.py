"""FocalNet architecture search: the keypoint task (data, metrics, training) and the study harness."""
