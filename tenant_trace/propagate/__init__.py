"""propagate"""
