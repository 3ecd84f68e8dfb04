"""What people read: the console summary, the HTML/Markdown report, figures and plots, run comparison."""
