"""Documents received by fax or Direct: stored first, then matched to the work they answer."""
