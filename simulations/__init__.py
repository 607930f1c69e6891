"""dgpu.simulations"""
