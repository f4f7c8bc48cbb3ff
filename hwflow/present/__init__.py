"""Presentation: figures (`plots`) and text tables (`tables`) drawn from what the stages
wrote. Nothing here computes a result; the stages and experiments import nothing from it.
"""
