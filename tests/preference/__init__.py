"""Tests of preference/."""
