"""dgpu.coordinator"""
