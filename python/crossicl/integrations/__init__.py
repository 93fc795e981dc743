"""Adapters that plug crossicl into other tools. Each is imported on its own (``import crossicl`` imports none
of them, nor the tool it adapts):

* ``crossicl.integrations.lm_eval``: ``crossicl.Engine`` as the lm-evaluation-harness model ``crossicl``
  (``pip install 'crossicl[lm-eval]'``; docs/lm-eval.md).
* ``crossicl.integrations.lm_eval_tasks``: local lm-eval tasks built from the paper pack (ARC-Challenge,
  financial_phrasebank), with the writer of their data files.
"""
