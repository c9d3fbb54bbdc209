"""Figures, one function per question, by theme: ``curves`` (over training), ``scaling`` (over
the learning rate × batch size grid), ``diagnostics`` (sharpness against the stability bound)
and ``seed`` (the seed's own pictures); ``style`` holds what they share."""
