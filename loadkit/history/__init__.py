"""Regression-aware confidence over asv history.

Pure statistics over plain arrays, tested without I/O: ``changepoints`` (permutation
CUSUM binary segmentation), ``drift`` (Theil–Sen with a Hamed–Rao-corrected
Mann–Kendall test), ``gate`` (newest commit vs the stable segment), ``confidence``
(p-value calibration, detectable effect) and ``scoring`` (all of it for one series).
``simulation`` measures them against asv's ``step_detect`` on series with known truth.

At the edges: ``asv_reader`` (results through ``asv.results`` into a ``point_table``,
skips summarised by ``skipped_files``), ``commit_order`` (which commit is newer, from
``git_history``, asv's ``index.json`` via ``asv_index``, or dates; settings from
``asv_config``), ``tables`` (rich table, JSON, shared wording), the history page
(``page_rows`` groups, ``svg_plots`` draws, ``history_page`` writes, ``run_targets`` and
``asv_offline`` beside it), and ``commands`` (the ``check``, ``calibrate`` and
``report`` commands).
"""
