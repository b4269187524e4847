"""Field work (入户走访): door-to-door campaigns over the buildings of communities or grids,
in rounds (Tongling: five rounds of screening over 4,000+ households), and routine visits
(三登门五必访); the visits grid workers record from their phones (every one safe to resend),
progress per grid, community and worker, and each worker's walking order through the
buildings still to visit.
"""
