"""dgpu.contracts"""
