"""Who may connect: password accounts and open-mode nicknames (``accounts``), Cognito ID tokens
(``cognito``), and what every way of signing in has in common (``identity``)."""
