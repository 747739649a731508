"""Test support that benchmarks share with the suite: fixtures builders and fault-injection hooks.

Nothing in the product imports this package except through the small hook module that tests enable."""
