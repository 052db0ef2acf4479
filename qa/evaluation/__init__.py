"""Evaluation: `qa eval` and `qa calibrate` on a labelled question set.

`questions` (the question-set format), `metrics` (pure ranking and answer metrics), `scoring`
(one pipeline run scored against gold), `run` (the `qa eval` command), `gates` (--min/--max
thresholds), `report` (terminal table and HTML) and `calibrate` (the abstention threshold
fitted to a user's own questions). Drives the pipeline from above; nothing below imports it.
"""
