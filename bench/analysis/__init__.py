"""From stored runs to figures: run loading, the summary, statistics, paired comparisons, validity and saturation."""
