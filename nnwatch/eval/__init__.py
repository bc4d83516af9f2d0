"""Evaluation: detection metrics, attacks (torch, lazy), HTML reports."""
