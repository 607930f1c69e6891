"""dgpu.pricing"""
