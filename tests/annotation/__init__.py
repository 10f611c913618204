"""Tests of annotation/."""
