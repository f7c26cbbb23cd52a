from payment_service.main import main

main()
