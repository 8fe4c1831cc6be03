"""Code shared by the bundle's Lambdas: the names every part agrees on, secrets, GitLab access."""
