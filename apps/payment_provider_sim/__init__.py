"""The payment provider simulator: an external PSP's charges and refunds, with its faults."""
