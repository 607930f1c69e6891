"""dgpu.node"""
