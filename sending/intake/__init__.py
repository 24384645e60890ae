"""Taking mail in: the one accept pipeline (accept), the API's and SMTP's submissions, MIME composition."""
