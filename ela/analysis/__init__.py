"""`python -m ela.analyze`: load a sweep, aggregate, compare, find fronts, recommend, report, plot."""
