"""Every page the recipe writes about its runs, in one place.

* :mod:`.results`: an evaluation's ``results.md`` (the paper's Table 3 beside this run) and its figure;
* :mod:`.experiment` and :mod:`.sweep`: an ``egs/<experiment>`` sweep's table and figure;
* :mod:`.model_card`: the ``README.md`` of a publish folder;
* :mod:`.data`: what a stage-2 manifest contains;
* :mod:`.listening`: ``index.html`` beside separated stems, to listen to them (stage 4's examples,
  ``asteroid-frugal-separate --report``);
* :mod:`.docs_results`, :mod:`.docs_generalisation`, :mod:`.docs_realtime`: the pages of ``docs/``
  (their commands: ``docs/make_results.py``, ``docs/make_generalisation.py``, ``docs/make_realtime.py``).

The stages call these modules to write their pages; the pages read only the runs' own files.
"""
