"""Signed PCR policies: digest maths (digests.py), approvals (.pcrsig, approvals.py), allowlist trees."""
