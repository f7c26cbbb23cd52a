from payment_provider_sim.main import main

main()
