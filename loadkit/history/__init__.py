"""Regression-aware confidence over asv history, in four layers, bottom first.

``stats`` holds the pure statistics over plain arrays, tested without I/O:
``changepoints`` (permutation CUSUM binary segmentation), ``drift`` (Theil–Sen with a
Hamed–Rao-corrected Mann–Kendall test), ``gate`` (newest commit vs the stable segment),
``confidence``, ``noise`` and ``laws`` (the noise a family of series shares),
``posterior``, ``machine_level`` (shifts every benchmark shares) and ``scoring`` (all of
it for one machine). ``sources`` reads: ``asv_reader`` (results through ``asv.results``
into a ``point_table``, skips summarised by ``skipped_files``), ``commit_order`` (which
commit is newer, from ``git_history``, asv's ``index.json`` via ``asv_index``, or
dates; settings from ``asv_config``), ``run_targets``. ``present`` shows:
``check_table`` (rich table, JSON, shared wording), the page (``page_rows`` groups,
``svg_plots`` draws, ``page`` writes, ``asv_offline`` beside it). ``calibration``
measures the statistics against asv's ``step_detect`` on histories with known truth.
``actions`` runs ``check``, ``report`` and ``calibrate`` from typed ``options``.
"""
