"""The search: study set-up and storage, what to try next, when to stop, where trials run, export, the CLI.

Imports ``search_space``, ``evaluators`` and (the CLI only) ``reports``; see each subpackage for its own rule.
"""
