"""dgpu.bootstrap"""
