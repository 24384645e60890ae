"""Sending statistics: counts per hour and day of each outcome, by sender domain, stream, tag and recipient
provider (counting: written by sending.states with the events), and what the stats API and the dashboard's
charts read (reading)."""
