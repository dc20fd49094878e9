"""latch"""
