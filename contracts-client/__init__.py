"""dgpu.contracts-client"""
